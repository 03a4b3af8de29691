"""Small-scale experiments that hold up (the book's protocol for every claim that needs training):
several seeds per arm, a ledger of runs recorded as they finish (``ledger``), the statistics of a
difference and a verdict by direction (``stats``), and the loop that runs what is missing
(``protocol``)."""
