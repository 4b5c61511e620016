from libs.devstack.cli import main

main()
