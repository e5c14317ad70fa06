package forensics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/tripwire-project/tripwire/agent/audit"
	"github.com/tripwire-project/tripwire/proto/chain"
)

// tamperBase writes a 40-event chain (rotated) and returns its directory and SQL export.
func tamperBase(t *testing.T) (string, string) {
	t.Helper()
	dir := t.TempDir()
	var ps []chain.Payload
	for i := range 40 {
		ps = append(ps, fileEvent(i))
	}
	writeChain(t, dir, 8<<10, ps...)
	return dir, exportString(t, dirSource(t, dir, "web-01"), Options{})
}

var rowRE = regexp.MustCompile(`(?m)^\('web-01', (\d+), (\d+), `)

// rowLine returns the index in lines of the entries row with the given seq.
func rowLine(t *testing.T, lines []string, seq int) int {
	t.Helper()
	for i, l := range lines {
		if m := rowRE.FindStringSubmatch(l); m != nil && m[2] == fmt.Sprint(seq) {
			if !strings.HasSuffix(l, ",") {
				t.Fatalf("row of seq %d ends its statement; pick another", seq)
			}
			return i
		}
	}
	t.Fatalf("no row for seq %d", seq)
	return 0
}

func breaks(t *testing.T, script string) []string {
	t.Helper()
	return rows(t, loadScript(t, script), `SELECT seq, coalesce(CAST(pos AS VARCHAR), '-'), "check" FROM chain_breaks`)
}

func TestTamperedExportFlagged(t *testing.T) {
	_, script := tamperBase(t)
	if got := breaks(t, script); len(got) != 0 {
		t.Fatalf("intact export has breaks: %q", got)
	}
	edit := func(lines []string) {
		i := rowLine(t, lines, 10)
		lines[i] = strings.Replace(lines[i], "--bucket backups-", "--bucket evil-", 1)
	}
	del := func(lines []string) []string {
		i := rowLine(t, lines, 20)
		return slices.Delete(lines, i, i+1)
	}
	// reorder: the export claims seq 31 came before seq 30 in the chain: the two rows
	// swap places and positions.
	reorder := func(lines []string) {
		i, j := rowLine(t, lines, 30), rowLine(t, lines, 31)
		pi, pj := rowRE.FindStringSubmatch(lines[i])[1], rowRE.FindStringSubmatch(lines[j])[1]
		li := strings.Replace(lines[i], "('web-01', "+pi+", ", "('web-01', "+pj+", ", 1)
		lj := strings.Replace(lines[j], "('web-01', "+pj+", ", "('web-01', "+pi+", ", 1)
		lines[i], lines[j] = lj, li
	}
	// relabel: two entries' contents swap under their (pos, seq) labels.
	relabel := func(lines []string) {
		i, j := rowLine(t, lines, 35), rowLine(t, lines, 36)
		mi, mj := rowRE.FindString(lines[i]), rowRE.FindString(lines[j])
		lines[i], lines[j] = mi+lines[j][len(mj):], mj+lines[i][len(mi):]
	}
	cases := []struct {
		name   string
		tamper func([]string) []string
		want   []string // seq|pos|check
	}{
		{"payload edited", func(l []string) []string { edit(l); return l }, []string{"10|10|hash"}},
		{"entry deleted", del, []string{"21|21|gap", "21|21|link"}},
		{"entries reordered", func(l []string) []string { reorder(l); return l },
			[]string{"31|30|order", "31|30|link", "30|31|order", "30|31|link", "32|32|order", "32|32|link"}},
		{"contents swapped", func(l []string) []string { relabel(l); return l },
			[]string{"35|35|link", "35|35|payload_seq", "36|36|link", "36|36|payload_seq", "37|37|link"}},
		{"all at once", func(l []string) []string { edit(l); reorder(l); return del(l) },
			[]string{"10|10|hash", "21|21|gap", "21|21|link", "31|30|order", "31|30|link", "30|31|order", "30|31|link", "32|32|order", "32|32|link"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			lines := c.tamper(strings.Split(script, "\n"))
			got := breaks(t, strings.Join(lines, "\n"))
			if !slices.Equal(got, c.want) {
				t.Fatalf("chain_breaks:\n got %q\nwant %q", got, c.want)
			}
			// verify --export names the first of them.
			path := writeFile(t, filepath.Join(t.TempDir(), "x.sql"), strings.Join(lines, "\n"))
			_, err := VerifyExport(context.Background(), path, t.TempDir())
			var be *BreakError
			if !errors.As(err, &be) || fmt.Sprintf("%d|%d|%s", be.Seq, be.Pos, be.Check) != c.want[0] {
				t.Fatalf("VerifyExport: %v, want a break %s", err, c.want[0])
			}
		})
	}
}

// TestTamperedChainFlagged: lines swapped or removed in a seized segment directory are
// exported as found and flagged by the views where audit.Verify flags them.
func TestTamperedChainFlagged(t *testing.T) {
	dir, _ := tamperBase(t)
	seg := segFiles(t, dir)[1]
	b, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(b), "\n")
	var first uint64
	if _, err := fmt.Sscanf(lines[0][linePayloadOff:], `{"seq":%d`, &first); err != nil {
		t.Fatal(err)
	}
	lines[2], lines[3] = lines[3], lines[2]
	if err := os.WriteFile(seg, []byte(strings.Join(lines, "")), 0o600); err != nil {
		t.Fatal(err)
	}
	var ve *audit.VerifyError
	if _, err := audit.Verify(dir); !errors.As(err, &ve) || ve.Seq != first+2 {
		t.Fatalf("audit.Verify: %v, want a break at seq %d", err, first+2)
	}
	got := breaks(t, exportString(t, dirSource(t, dir, "web-01"), Options{}))
	if len(got) == 0 || got[0] != fmt.Sprintf("%d|%d|order", first+3, first+2) {
		t.Fatalf("chain_breaks: %q, want the first at seq %d, position %d", got, first+3, first+2)
	}
}

// TestTamperedNDJSONFlagged: an NDJSON export is checked by the same views.
func TestTamperedNDJSONFlagged(t *testing.T) {
	dir, _ := tamperBase(t)
	nd := exportString(t, dirSource(t, dir, "web-01"), Options{Format: FormatNDJSON})
	ok := writeFile(t, filepath.Join(t.TempDir(), "ok.ndjson"), nd)
	if rep, err := VerifyExport(context.Background(), ok, t.TempDir()); err != nil || rep.Hashed != rep.Entries {
		t.Fatalf("VerifyExport of an intact NDJSON export: %+v %v", rep, err)
	}
	lines := strings.Split(nd, "\n")
	lines[11] = strings.Replace(lines[11], "--bucket backups-", "--bucket evil-", 1)
	lines = slices.Delete(lines, 20, 21)
	bad := writeFile(t, filepath.Join(t.TempDir(), "bad.ndjson"), strings.Join(lines, "\n"))
	_, err := VerifyExport(context.Background(), bad, t.TempDir())
	var be *BreakError
	if !errors.As(err, &be) || be.Seq != 12 || be.Check != "hash" {
		t.Fatalf("VerifyExport: %v, want a hash break at seq 12", err)
	}
}

// TestTornTailExported: a seized directory whose last line was torn by a crash exports
// every complete entry, and the export says what it left out.
func TestTornTailExported(t *testing.T) {
	dir, _ := tamperBase(t)
	segs := segFiles(t, dir)
	last := segs[len(segs)-1]
	f, err := os.OpenFile(last, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(`{"hash":"abc`); err != nil {
		t.Fatal(err)
	}
	f.Close()
	script := exportString(t, dirSource(t, dir, "web-01"), Options{})
	db := loadScript(t, script)
	if got := rows(t, db, "SELECT * FROM chain_breaks"); len(got) != 0 {
		t.Fatalf("chain_breaks: %q", got)
	}
	if got := rows(t, db, "SELECT value FROM export_meta WHERE key = 'source_note'"); len(got) != 1 || !strings.Contains(got[0], "without newline") {
		t.Fatalf("source_note: %q", got)
	}
	// Torn in an older segment is not a crash's doing: the export stops.
	if err := os.WriteFile(segs[0], []byte(`{"hash":"abc`), 0o600); err != nil {
		t.Fatal(err)
	}
	var fe *FormatError
	_, err = Export(context.Background(), dirSource(t, dir, "web-01"), io.Discard, Options{})
	if !errors.As(err, &fe) || fe.Segment != filepath.Base(segs[0]) || fe.Offset != 0 {
		t.Fatalf("Export: %v, want a FormatError at the start of %s", err, filepath.Base(segs[0]))
	}
}
