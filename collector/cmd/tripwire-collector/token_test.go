package main

import (
	"bytes"
	"errors"
	"net"
	"os"
	"testing"
)

// The enrol command names an address a host can dial, not the listener's wildcard.
func TestDialable(t *testing.T) {
	host, err := os.Hostname()
	if err != nil {
		t.Fatalf("os.Hostname: %v (the command names this host in place of a wildcard listener)", err)
	}
	for in, want := range map[string]string{
		"0.0.0.0:7444":            net.JoinHostPort(host, "7444"),
		"[::]:7444":               net.JoinHostPort(host, "7444"),
		":7444":                   net.JoinHostPort(host, "7444"),
		"127.0.0.1:7444":          "127.0.0.1:7444",
		"collector.example.com:1": "collector.example.com:1",
		"not an address":          "not an address",
	} {
		if got := dialable(in); got != want {
			t.Errorf("dialable(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestTokenCmdUsage(t *testing.T) {
	for _, args := range [][]string{{}, {"--host", "a", "--list"}, {"--host", "a", "extra"}} {
		var out bytes.Buffer
		err := run(append([]string{"pki", "token", "--token", "x-token-123"}, args...), &out, &out)
		var ue usageError
		if !errors.As(err, &ue) {
			t.Errorf("pki token %v: %v, want a usage error", args, err)
		}
	}
}
