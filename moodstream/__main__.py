from moodstream.cli.main import main

main()
