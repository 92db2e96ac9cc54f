"""Operations the API (and the CLI) call; each runs in one store transaction."""
