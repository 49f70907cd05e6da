import LatentWatchCLI

LatentWatchCommand.main()
