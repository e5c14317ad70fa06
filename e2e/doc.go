// Package e2e holds the end-to-end tests: they build the real binaries, start a
// collector on its embedded store and agents as processes, touch tripwires as other users
// through the real kernel, and read the result from the collector's API.
package e2e
