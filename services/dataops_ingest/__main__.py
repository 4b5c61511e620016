from services.dataops_ingest.main import main

main()
