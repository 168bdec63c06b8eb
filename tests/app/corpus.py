"""A small corpus written for the relevance test: 30 passages on distinct topics, and 20
questions, each with the passage that answers it."""

PASSAGES = {
    "sourdough": "A sourdough starter is a culture of wild yeast and lactic acid bacteria kept "
    "alive by feeding it flour and water every day; it leavens bread without commercial yeast.",
    "espresso": "Espresso is brewed by forcing hot water at about nine bars of pressure through "
    "finely ground, tightly packed coffee for around 25 to 30 seconds.",
    "photosynthesis": "Plants turn sunlight, water and carbon dioxide into glucose and oxygen "
    "in their chloroplasts, using the green pigment chlorophyll to capture light.",
    "volcano": "Volcanoes erupt when molten rock called magma rises through the crust and "
    "escapes as lava, ash and gas, often where tectonic plates meet.",
    "marathon": "A marathon is a long-distance running race of 42.195 kilometres; runners "
    "train for months, building weekly mileage and doing long slow runs.",
    "chess": "In chess, castling moves the king two squares toward a rook and places that rook "
    "on the other side of the king, provided neither piece has moved before.",
    "tides": "Ocean tides are caused mainly by the Moon's gravity pulling on the Earth's "
    "oceans, producing two high tides and two low tides roughly every day.",
    "vaccines": "Vaccines train the immune system by exposing it to a harmless piece or "
    "weakened form of a pathogen, so the body makes antibodies before a real infection.",
    "bees": "Honeybees communicate the location of flowers to their hive mates with the "
    "waggle dance, whose angle and duration encode direction and distance.",
    "compound_interest": "Compound interest means earning interest on previously earned "
    "interest, so savings grow exponentially the longer the money stays invested.",
    "tcp": "TCP establishes a connection with a three-way handshake of SYN, SYN-ACK and ACK "
    "packets and retransmits lost segments so data arrives complete and in order.",
    "guitar": "To tune a guitar in standard tuning, set the strings from lowest to highest to "
    "E, A, D, G, B and E, using a clip-on tuner or a reference pitch.",
    "knitting": "Knitting makes fabric from yarn by pulling loops through other loops with "
    "two needles; the basic stitches are the knit stitch and the purl stitch.",
    "black_holes": "A black hole is a region of spacetime where gravity is so strong that "
    "nothing, not even light, can escape once it crosses the event horizon.",
    "rainbows": "Rainbows appear when sunlight is refracted, reflected and dispersed inside "
    "raindrops, splitting white light into its spectrum of colours.",
    "composting": "Composting turns kitchen scraps and garden waste into fertile humus as "
    "microbes break down organic matter; it needs air, moisture, greens and browns.",
    "sleep": "Adults need about seven to nine hours of sleep a night; deep sleep and REM "
    "sleep help memory consolidation and physical recovery.",
    "pyramids": "The Great Pyramid of Giza was built around 2560 BC as a tomb for the pharaoh "
    "Khufu from millions of limestone and granite blocks.",
    "electric_cars": "Electric cars store energy in lithium-ion battery packs and drive the "
    "wheels with electric motors, charging from the grid instead of burning petrol.",
    "origami": "Origami is the Japanese art of folding a single square sheet of paper into "
    "shapes such as cranes and boxes without cutting or gluing it.",
    "whales": "Blue whales are the largest animals ever known to have lived, reaching about "
    "30 metres long and feeding almost entirely on tiny krill.",
    "tea": "Green tea and black tea come from the same plant, Camellia sinensis; black tea "
    "leaves are oxidised before drying while green tea leaves are not.",
    "git": "In git, a branch is a movable pointer to a commit; merging combines the histories "
    "of two branches and rebasing replays commits on top of another base.",
    "olympics": "The modern Olympic Games began in Athens in 1896 and are held every four years, "
    "alternating summer and winter games two years apart.",
    "recycling_glass": "Glass can be recycled endlessly without losing quality: it is sorted "
    "by colour, crushed into cullet and melted to make new bottles and jars.",
    "bicycle_gears": "Bicycle gears change how far the bike travels per pedal turn; a low gear "
    "makes climbing hills easier while a high gear gives speed on the flat.",
    "earthquakes": "Earthquake strength is reported on the moment magnitude scale, where each "
    "whole number step means about 32 times more energy released.",
    "passwords": "A strong password is long and unique for each account; a password manager "
    "can generate and remember them, and two-factor authentication adds a second check.",
    "penguins": "Emperor penguins breed during the Antarctic winter; the males incubate the "
    "single egg on their feet for about two months while the females feed at sea.",
    "cheese": "Cheese is made by curdling milk with rennet or acid, separating the curds from "
    "the whey, then pressing, salting and ageing the curds.",
}

QUESTIONS = {
    "How do I keep a wild yeast culture going for baking bread?": "sourdough",
    "What pressure is used to make an espresso shot?": "espresso",
    "How do plants make their food from light?": "photosynthesis",
    "Why does the sea level rise and fall twice a day?": "tides",
    "How do immunisations protect you from disease?": "vaccines",
    "How do bees tell each other where the flowers are?": "bees",
    "Why does my savings account grow faster over time?": "compound_interest",
    "What is the handshake that opens a network connection?": "tcp",
    "Which notes should the six strings be tuned to?": "guitar",
    "Can light get out of a black hole?": "black_holes",
    "Why do we see colourful arcs in the sky after rain?": "rainbows",
    "How can I turn food waste into garden soil?": "composting",
    "How many hours should a grown-up rest each night?": "sleep",
    "Who was buried in the largest pyramid in Egypt?": "pyramids",
    "What is the biggest animal that ever lived?": "whales",
    "What is the difference between green and black tea?": "tea",
    "What does rebasing a branch do in version control?": "git",
    "When did the modern Olympics start?": "olympics",
    "Which gear should I use to ride up a steep hill?": "bicycle_gears",
    "How do I make my online accounts harder to break into?": "passwords",
}
