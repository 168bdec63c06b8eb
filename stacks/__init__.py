"""Operations on stacks (review stacks, drift), built in their own issue."""
