module driftguard.io/tools/pause

go 1.26
