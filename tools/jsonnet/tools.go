//go:build tools

// Package tools pins the jsonnet main package so `go mod tidy` keeps it.
package tools

import _ "github.com/google/go-jsonnet/cmd/jsonnet"
