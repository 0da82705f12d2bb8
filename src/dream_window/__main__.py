from dream_window.cli import main

main()
