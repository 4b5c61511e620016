from services.aiops_detector.main import main

main()
