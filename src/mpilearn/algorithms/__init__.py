"""Update rules as small functions over flat numpy vectors."""
