package server

import (
	"net/http"
	"net/http/pprof"
)

// debugHandler serves Go's runtime profiles under /debug/pprof/ (listen.debug), on a mux
// of its own: importing net/http/pprof registers them on http.DefaultServeMux, which
// nothing here serves.
func debugHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// DebugAddr is the address of the profiles listener, or "" when listen.debug is unset.
func (s *Server) DebugAddr() string {
	if s.debugL == nil {
		return ""
	}
	return s.debugL.Addr().String()
}
