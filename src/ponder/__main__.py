from ponder.cli import main

main()
