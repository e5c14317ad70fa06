// Package benchnet holds the network helpers the benchmark programs share: a free
// loopback address for a server they start, and a wait for it to answer.
package benchnet

import (
	"fmt"
	"net"
	"net/http"
	"time"
)

// FreeAddr returns a loopback address with a port free at the time of the call.
func FreeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// WaitHTTP waits until a GET of url answers 200, for at most timeout.
func WaitHTTP(url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s did not answer 200 within %v", url, timeout)
}
