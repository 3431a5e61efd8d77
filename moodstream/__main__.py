from moodstream.cli import main

main()
