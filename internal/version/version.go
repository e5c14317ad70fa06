// Package version holds the build version, set by the linker (-X) from `git describe`.
package version

// Version is the build version ("dev" for untagged builds).
var Version = "dev"
