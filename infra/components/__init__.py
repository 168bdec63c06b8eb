"""One `pulumi.ComponentResource` per concern; `infra/__main__.py` wires them."""

import pulumi


def children(
    parent: pulumi.Resource,
    opts: pulumi.ResourceOptions | None,
    after: list[pulumi.Resource] | None = None,
) -> pulumi.ResourceOptions:
    """Options for a component's child: the component as parent, and the component's own
    `depends_on` (Pulumi does not pass it on to children: without this, a child of a component
    declared after the project APIs would not wait for them), plus `after`."""
    inherited = (opts.depends_on if opts else None) or []
    assert isinstance(inherited, list), "a component's depends_on is given as a list"
    return pulumi.ResourceOptions(parent=parent, depends_on=[*inherited, *(after or [])])
