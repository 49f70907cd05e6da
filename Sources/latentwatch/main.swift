import LatentWatchCLI

await LatentWatchCommand.runMain()
