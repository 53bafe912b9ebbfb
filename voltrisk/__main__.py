from voltrisk.cli import main

main()
