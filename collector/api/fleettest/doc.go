// Package fleettest runs the collector API against the production store (storage/fleet)
// on real ClickHouse and PostgreSQL servers (internal/testservers): what only that store
// shows, such as a SQL result that fails after rows were streamed. It holds tests only;
// the api package's own tests run on the embedded store.
package fleettest
