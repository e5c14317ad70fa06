package batch

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

func sample() []Entry {
	ts := time.Date(2026, 11, 25, 6, 14, 52, 123456789, time.UTC)
	return []Entry{
		{Seq: 7, Time: ts, Kind: "event", Type: "FILE", Rule: "passwd", Severity: "CRITICAL",
			PrevHash: "aa", Hash: "bb", Payload: []byte(`{"seq":7,"quote":"\"","nl":"\n","u":"é"}`)},
		{Seq: 8, Time: ts.Add(time.Nanosecond), Kind: "agent", PrevHash: "bb", Hash: "cc", Payload: []byte(`{"seq":8}`)},
	}
}

func TestRoundTrip(t *testing.T) {
	want := sample()
	data, err := Encode(want)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("got %d rows, want %d", len(got), len(want))
	}
	for i := range want {
		w, g := want[i], got[i]
		if g.Seq != w.Seq || !g.Time.Equal(w.Time) || g.Kind != w.Kind || g.Type != w.Type || g.Rule != w.Rule ||
			g.Severity != w.Severity || g.PrevHash != w.PrevHash || g.Hash != w.Hash || !bytes.Equal(g.Payload, w.Payload) {
			t.Errorf("row %d: got %+v, want %+v", i, g, w)
		}
	}
}

// A batch written with another schema is refused with the column named.
func TestDecodeNamesTheBadColumn(t *testing.T) {
	fields := Schema.Fields()
	fields[0].Type = arrow.PrimitiveTypes.Int64 // seq signed
	other := arrow.NewSchema(fields, nil)
	b := array.NewRecordBuilder(memory.DefaultAllocator, other)
	defer b.Release()
	rec := b.NewRecordBatch()
	defer rec.Release()
	var buf bytes.Buffer
	w := ipc.NewWriter(&buf, ipc.WithSchema(other))
	if err := w.Write(rec); err != nil {
		t.Fatal(err)
	}
	w.Close()
	_, err := Decode(buf.Bytes())
	var se *SchemaError
	if !errors.As(err, &se) || se.Field != ColSeq {
		t.Fatalf("err = %v, want a SchemaError naming %q", err, ColSeq)
	}
}

func TestDecodeRejectsEmptyAndGarbage(t *testing.T) {
	empty, err := Encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Decode(empty); !errors.Is(err, ErrEmpty) {
		t.Errorf("empty batch: err = %v, want ErrEmpty", err)
	}
	for _, junk := range [][]byte{nil, []byte("not arrow"), bytes.Repeat([]byte{0xff}, 64)} {
		if _, err := Decode(junk); err == nil {
			t.Errorf("Decode(%q) succeeded", junk)
		}
	}
}

// A compressed body states its uncompressed size, which arrow-go would allocate on
// trust: such batches are refused before arrow-go reads them.
func TestDecodeRefusesCompression(t *testing.T) {
	b := array.NewRecordBuilder(memory.DefaultAllocator, Schema)
	defer b.Release()
	rec := b.NewRecordBatch()
	defer rec.Release()
	var buf bytes.Buffer
	w := ipc.NewWriter(&buf, ipc.WithSchema(Schema), ipc.WithZstd())
	if err := w.Write(rec); err != nil {
		t.Fatal(err)
	}
	w.Close()
	if _, err := Decode(buf.Bytes()); err == nil || !strings.Contains(err.Error(), "compressed") {
		t.Fatalf("err = %v, want compressed batches refused", err)
	}
}

// FuzzDecode: whatever bytes an agent sends, Decode returns rows or an error, and never
// panics or hangs.
func FuzzDecode(f *testing.F) {
	good, _ := Encode(sample())
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, err := Decode(data)
		if err == nil && len(entries) == 0 {
			t.Fatal("no error and no rows")
		}
	})
}
