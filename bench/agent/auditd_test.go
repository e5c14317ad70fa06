package main

import (
	"bytes"
	"os"
	"testing"
)

// TestAuditFiles counts a log auditd 3.0.9 wrote (format=enriched) for creations, writes
// and deletions under a `-w /tmp/h7ad/d -p wa -k twburst` rule; the write of f1 was
// re-keyed "other" and must not count.
func TestAuditFiles(t *testing.T) {
	const log = "testdata/audit.log"
	data, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	writes := int64(bytes.Index(data, []byte("type=SYSCALL msg=audit(1795598762.030:27283)")))
	if writes < 0 {
		t.Fatal("fixture: no write of f0")
	}
	for _, c := range []struct {
		name                               string
		offset                             int64
		key, dir                           string
		created, written, deleted, records int
	}{
		{"whole log", 0, "twburst", "/tmp/h7ad/d", 2, 1, 2, 24},
		{"from the writes on", writes, "twburst", "/tmp/h7ad/d", 0, 1, 2, 14},
		{"other key", 0, "other", "/tmp/h7ad/d", 0, 1, 0, 4},
		{"other directory", 0, "twburst", "/tmp/h7", 0, 0, 0, 24},
	} {
		t.Run(c.name, func(t *testing.T) {
			cr, wr, de, rec, err := auditFiles(log, c.offset, c.key, c.dir)
			if err != nil {
				t.Fatal(err)
			}
			if cr != c.created || wr != c.written || de != c.deleted || rec != c.records {
				t.Errorf("created, written, deleted, records = %d, %d, %d, %d; want %d, %d, %d, %d",
					cr, wr, de, rec, c.created, c.written, c.deleted, c.records)
			}
		})
	}
}
