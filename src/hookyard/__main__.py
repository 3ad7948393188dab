from hookyard.cli import main

main()
