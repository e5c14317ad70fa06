package testservers

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
)

// ClickHouseServer is where Debian's clickhouse-server package puts the server.
const ClickHouseServer = "/usr/sbin/clickhouse-server"

// ClickHouseDB is a database on the package's ClickHouse server.
type ClickHouseDB struct {
	Addr     string // host:port of the native protocol
	Database string // created empty for the caller
}

// ClickHouse returns a new, empty database on the package's ClickHouse server, starting
// the server on first use. The user is "default", without a password.
func ClickHouse(t testing.TB) ClickHouseDB {
	t.Helper()
	p := shared(t, "clickhouse", ClickHouseServer, "clickhouse-server", startClickHouse)
	name := nextDBName()
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{p.addr}, ReadTimeout: 30 * time.Second})
	if err != nil {
		t.Fatalf("connecting to the test ClickHouse: %v", err)
	}
	defer conn.Close()
	if err := conn.Exec(t.Context(), "CREATE DATABASE "+name); err != nil {
		t.Fatalf("creating database %s: %v", name, err)
	}
	return ClickHouseDB{Addr: p.addr, Database: name}
}

// clickhouseConfig is a minimal server config: the native protocol on loopback only, no
// HTTP, interserver, Graphite, query log or other system logs, small caches.
const clickhouseConfig = `<?xml version="1.0"?>
<yandex>
    <logger><level>warning</level><console>1</console></logger>
    <listen_host>127.0.0.1</listen_host>
    <tcp_port>%d</tcp_port>
    <path>%[2]s/data/</path>
    <tmp_path>%[2]s/tmp/</tmp_path>
    <user_files_path>%[2]s/user_files/</user_files_path>
    <format_schema_path>%[2]s/format_schemas/</format_schema_path>
    <users_config>users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mark_cache_size>67108864</mark_cache_size>
    <uncompressed_cache_size>67108864</uncompressed_cache_size>
    <max_concurrent_queries>100</max_concurrent_queries>
    <mlock_executable>false</mlock_executable>
</yandex>
`

const clickhouseUsers = `<?xml version="1.0"?>
<yandex>
    <profiles><default><max_memory_usage>2000000000</max_memory_usage></default></profiles>
    <users>
        <default>
            <password></password>
            <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas><default></default></quotas>
</yandex>
`

func startClickHouse() (*process, error) {
	who, dir, port, err := initClickHouse()
	if err != nil {
		return nil, err
	}
	return runClickHouse(who, dir, port)
}

// initClickHouse makes a directory with the server's config and picks a free port.
func initClickHouse() (who runAs, dir string, port int, err error) {
	if who, err = account("clickhouse"); err != nil {
		return who, "", 0, err
	}
	if dir, err = who.mkdir("tripwire-ch-*"); err != nil {
		return who, "", 0, err
	}
	fail := func(err error) (runAs, string, int, error) { return who, "", 0, errors.Join(err, os.RemoveAll(dir)) }
	if port, err = freePort(); err != nil {
		return fail(err)
	}
	config, users := filepath.Join(dir, "config.xml"), filepath.Join(dir, "users.xml")
	if err := os.WriteFile(config, fmt.Appendf(nil, clickhouseConfig, port, dir), 0o600); err != nil {
		return fail(err)
	}
	if err := os.WriteFile(users, []byte(clickhouseUsers), 0o600); err != nil {
		return fail(err)
	}
	if err := who.chownAll(config, users); err != nil {
		return fail(err)
	}
	return who, dir, port, nil
}

// runClickHouse starts the server of a directory made by initClickHouse and waits until
// it answers a ping.
func runClickHouse(who runAs, dir string, port int) (*process, error) {
	// The server writes preprocessed copies of its config next to it, so it runs there.
	cmd := exec.Command(ClickHouseServer, "--config-file="+filepath.Join(dir, "config.xml"))
	cmd.Dir = dir
	// 18.16 takes about 10 s to stop while clients are connected; a test server's
	// inserts are in its files when acknowledged, so it is killed after a second.
	p, err := launch("clickhouse", cmd, who, dir, filepath.Join(dir, "clickhouse.log"), syscall.SIGTERM, time.Second)
	if err != nil {
		return nil, err
	}
	p.addr = "127.0.0.1:" + strconv.Itoa(port)
	err = p.waitReady(func(ctx context.Context) error {
		conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{p.addr}, ReadTimeout: 30 * time.Second})
		if err != nil {
			return err
		}
		defer conn.Close()
		return conn.Ping(ctx)
	})
	if err != nil {
		return nil, errorsJoinStop(err, p)
	}
	return p, nil
}
