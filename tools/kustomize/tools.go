//go:build tools

// Package tools pins the kustomize main package so `go mod tidy` keeps it.
package tools

import _ "sigs.k8s.io/kustomize/kustomize/v5"
