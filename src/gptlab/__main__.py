from gptlab.cli.main import main

main()
