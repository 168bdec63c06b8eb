//go:build tools

// Package tools pins the Pulumi CLI as a dependency of this module, so `go build` of it uses
// the versions in go.mod and go.sum.
package tools

import (
	_ "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi"
)
