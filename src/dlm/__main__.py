"""`python -m dlm` (what torchrun starts): the same commands as `dlm`."""

from dlm.cli.app import main

main()
