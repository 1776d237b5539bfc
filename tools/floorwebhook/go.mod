module driftguard.local/floorwebhook

go 1.26.0
