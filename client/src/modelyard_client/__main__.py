from modelyard_client.cli import main

main()
