from services.deploy.main import main

main()
