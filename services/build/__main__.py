from services.build.main import main

main()
