//go:build tools

// Package tools pins the registry main package so `go mod tidy` keeps it.
package tools

import _ "github.com/distribution/distribution/v3/cmd/registry"
