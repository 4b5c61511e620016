from services.appmanager.main import main

main()
