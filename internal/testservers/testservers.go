// Package testservers starts real database servers for tests: a private, ephemeral
// PostgreSQL and ClickHouse per test package, each in its own temporary directory on a
// free loopback port, run from Debian's packages (postgresql, clickhouse-server) and torn
// down when the package's tests end. Tests get a fresh, empty database on the shared
// server for each call, so they never see each other's rows.
//
// A package that uses it runs its tests through Main:
//
//	func TestMain(m *testing.M) { testservers.Main(m) }
//
// When a server's binary is not installed, a test that asks for it fails if the CI
// environment variable is set and is skipped otherwise, naming the apt-get command that
// installs it (deploy/scripts/install-deps.sh installs both).
//
// Programs without a testing.TB, such as the benchmarks under bench/, start the same
// servers with StartPostgreSQL and StartClickHouse and stop them with Server.Stop.
//
// Both servers refuse or should not run as root, so when the test runs as root they run
// as their Debian system user (postgres, clickhouse), or as nobody when that is missing.
package testservers

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// startTimeout bounds how long a server may take to accept queries.
const startTimeout = 60 * time.Second

// registry holds the servers started in this test binary, stopped by Main.
var registry struct {
	sync.Mutex
	inMain  bool
	servers map[string]*process // by kind: "postgresql", "clickhouse"
	errs    map[string]error    // a start that failed is not retried by every test
}

// Main runs the package's tests, then stops every server they started and removes its
// directory, and exits with the tests' status.
func Main(m *testing.M) { os.Exit(Run(m)) }

// Run is Main for a TestMain that has more to clean up: it returns the status instead
// of exiting.
func Run(m *testing.M) int {
	registry.Lock()
	registry.inMain = true
	registry.Unlock()
	code := m.Run()
	registry.Lock()
	for _, p := range registry.servers {
		if err := p.stop(); err != nil {
			fmt.Fprintf(os.Stderr, "testservers: stopping %s: %v\n", p.name, err)
			code = max(code, 1)
		}
	}
	registry.servers = nil
	registry.Unlock()
	return code
}

// shared returns the running server of the given kind, starting it on first use.
func shared(t testing.TB, kind, binary, pkg string, start func() (*process, error)) *process {
	t.Helper()
	if msg, fatal := absent(kind, binary, pkg, os.Getenv("CI") != ""); msg != "" {
		if fatal {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	registry.Lock()
	defer registry.Unlock()
	if !registry.inMain {
		t.Fatal("testservers: the package's TestMain must call testservers.Main(m), which stops the servers")
	}
	if p := registry.servers[kind]; p != nil {
		return p
	}
	if err := registry.errs[kind]; err != nil {
		t.Fatalf("starting %s failed earlier in this package: %v", kind, err)
	}
	began := time.Now()
	var p *process
	var err error
	// A free port can be taken by another package's server before this one binds it:
	// each attempt picks a new port.
	for range 3 {
		if p, err = start(); err == nil {
			break
		}
	}
	if err != nil {
		if registry.errs == nil {
			registry.errs = map[string]error{}
		}
		registry.errs[kind] = err
		t.Fatalf("starting %s: %v", kind, err)
	}
	p.startup = time.Since(began)
	t.Logf("testservers: %s ready on %s in %v (dir %s)", kind, p.addr, p.startup.Round(time.Millisecond), p.dir)
	if registry.servers == nil {
		registry.servers = map[string]*process{}
	}
	registry.servers[kind] = p
	return p
}

// absent returns, when binary is missing, what to say and whether it is a failure (in
// CI, where a skipped storage test would hide a missing install step) or a skip.
func absent(kind, binary, pkg string, ci bool) (msg string, fatal bool) {
	if _, err := os.Stat(binary); err == nil {
		return "", false
	}
	msg = fmt.Sprintf("%s is not installed (%s missing): apt-get install -y %s (or run deploy/scripts/install-deps.sh)", kind, binary, pkg)
	if ci {
		return "CI is set, so this fails instead of skipping: " + msg, true
	}
	return msg, false
}

// process is a server running in the foreground as a child of the test binary.
type process struct {
	name    string
	cmd     *exec.Cmd
	dir     string // removed on stop, unless keepDir
	keepDir bool
	addr    string // host:port of the native protocol
	logPath string
	startup time.Duration
	stopSig syscall.Signal // asks for a fast, clean shutdown
	grace   time.Duration  // how long stop waits after stopSig before SIGKILL
	exited  chan struct{}  // closed when cmd has been waited for
	waitErr error
}

// runAs is the uid and gid a server runs as: the invoking user, or when that is root
// the named system user (nobody when missing).
type runAs struct {
	uid, gid uint32
	root     bool
}

func account(name string) (runAs, error) {
	if os.Geteuid() != 0 {
		return runAs{uid: uint32(os.Geteuid()), gid: uint32(os.Getegid())}, nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		if u, err = user.Lookup("nobody"); err != nil {
			return runAs{}, fmt.Errorf("looking up users %s and nobody: %w", name, err)
		}
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return runAs{}, fmt.Errorf("user %s: %w", u.Username, err)
	}
	return runAs{uid: uint32(uid), gid: uint32(gid), root: true}, nil
}

// mkdir makes a private directory owned by who, under the system temp dir (whose
// parents the server's user can traverse, unlike t.TempDir's).
func (who runAs) mkdir(pattern string) (string, error) {
	dir, err := os.MkdirTemp("", pattern)
	if err != nil {
		return "", err
	}
	if who.root {
		if err := os.Chown(dir, int(who.uid), int(who.gid)); err != nil {
			return "", errors.Join(err, os.RemoveAll(dir))
		}
	}
	return dir, nil
}

// chownAll gives who every file under dir that the test wrote.
func (who runAs) chownAll(paths ...string) error {
	if !who.root {
		return nil
	}
	for _, p := range paths {
		if err := os.Chown(p, int(who.uid), int(who.gid)); err != nil {
			return err
		}
	}
	return nil
}

// launch starts cmd as who, with its output in logPath.
func launch(name string, cmd *exec.Cmd, who runAs, dir, logPath string, stopSig syscall.Signal, grace time.Duration) (*process, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	// Pdeathsig: a test binary killed on a timeout takes its servers with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if who.root {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: who.uid, Gid: who.gid}
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting %s: %w", cmd.Path, err)
	}
	p := &process{name: name, cmd: cmd, dir: dir, logPath: logPath, stopSig: stopSig, grace: grace, exited: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		logf.Close()
		close(p.exited)
	}()
	return p, nil
}

// waitReady calls ready until it succeeds, the process exits or startTimeout passes.
func (p *process) waitReady(ready func(ctx context.Context) error) error {
	deadline := time.Now().Add(startTimeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		last = ready(ctx)
		cancel()
		if last == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %v: %w\n%s", p.name, startTimeout, last, p.logTail())
		}
		select {
		case <-p.exited:
			return fmt.Errorf("%s exited before it was ready (%v)\n%s", p.name, p.waitErr, p.logTail())
		case <-tick.C:
		}
	}
}

// stop ends the server (its stop signal, SIGKILL to its group after its grace) and
// removes its directory unless keepDir.
func (p *process) stop() error {
	select {
	case <-p.exited:
	default:
		_ = p.cmd.Process.Signal(p.stopSig)
		select {
		case <-p.exited:
		case <-time.After(p.grace):
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.exited
		}
	}
	if p.keepDir {
		return nil
	}
	return os.RemoveAll(p.dir)
}

func (p *process) logTail() string {
	data, err := os.ReadFile(p.logPath)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	return p.name + " log:\n" + strings.Join(lines, "\n")
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// dbCounter names the databases handed out, unique within the test binary.
var dbCounter struct {
	sync.Mutex
	n int
}

func nextDBName() string {
	dbCounter.Lock()
	defer dbCounter.Unlock()
	dbCounter.n++
	return fmt.Sprintf("test_%d_%d", os.Getpid(), dbCounter.n)
}
