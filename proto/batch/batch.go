// Package batch is the one definition of the Arrow schema that carries audit-chain
// entries from agent to collector, with its encoder and decoder. A batch is an Arrow IPC
// stream of one or more record batches; every row is one chain entry, with its stored
// payload text verbatim so that the receiver can recompute the hash chain, plus the
// columns analysts filter on, flattened so that stores can write them columnar.
// docs/formats/arrow-batch.md documents the schema for other implementations.
package batch

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// SchemaVersion is stored in the schema metadata under "tripwire.schema_version".
const SchemaVersion = "1"

// Column names, in schema order.
const (
	ColSeq      = "seq"
	ColTime     = "ts"
	ColKind     = "kind"
	ColType     = "tripwire_type"
	ColRule     = "rule_name"
	ColSeverity = "severity"
	ColPrevHash = "prev_hash"
	ColHash     = "hash"
	ColPayload  = "payload"
)

// Schema is the Arrow schema of event batches.
var Schema = arrow.NewSchema([]arrow.Field{
	{Name: ColSeq, Type: arrow.PrimitiveTypes.Uint64},
	{Name: ColTime, Type: &arrow.TimestampType{Unit: arrow.Nanosecond, TimeZone: "UTC"}},
	{Name: ColKind, Type: arrow.BinaryTypes.String},
	{Name: ColType, Type: arrow.BinaryTypes.String, Nullable: true},
	{Name: ColRule, Type: arrow.BinaryTypes.String, Nullable: true},
	{Name: ColSeverity, Type: arrow.BinaryTypes.String, Nullable: true},
	{Name: ColPrevHash, Type: arrow.BinaryTypes.String},
	{Name: ColHash, Type: arrow.BinaryTypes.String},
	{Name: ColPayload, Type: arrow.BinaryTypes.String},
}, func() *arrow.Metadata {
	m := arrow.NewMetadata([]string{"tripwire.schema_version"}, []string{SchemaVersion})
	return &m
}())

// Entry is one row: a chain entry as stored, with the flattened event columns (empty for
// entries that are not events).
type Entry struct {
	Seq      uint64
	Time     time.Time
	Kind     string
	Type     string
	Rule     string
	Severity string
	PrevHash string
	Hash     string
	Payload  []byte
}

// Encode writes entries as one Arrow IPC stream.
func Encode(entries []Entry) ([]byte, error) {
	b := array.NewRecordBuilder(memory.DefaultAllocator, Schema)
	defer b.Release()
	seq := b.Field(0).(*array.Uint64Builder)
	ts := b.Field(1).(*array.TimestampBuilder)
	kind := b.Field(2).(*array.StringBuilder)
	typ := b.Field(3).(*array.StringBuilder)
	rule := b.Field(4).(*array.StringBuilder)
	sev := b.Field(5).(*array.StringBuilder)
	prev := b.Field(6).(*array.StringBuilder)
	hash := b.Field(7).(*array.StringBuilder)
	payload := b.Field(8).(*array.StringBuilder)
	optional := func(sb *array.StringBuilder, s string) {
		if s == "" {
			sb.AppendNull()
		} else {
			sb.Append(s)
		}
	}
	for i := range entries {
		e := &entries[i]
		seq.Append(e.Seq)
		ts.Append(arrow.Timestamp(e.Time.UnixNano()))
		kind.Append(e.Kind)
		optional(typ, e.Type)
		optional(rule, e.Rule)
		optional(sev, e.Severity)
		prev.Append(e.PrevHash)
		hash.Append(e.Hash)
		payload.BinaryBuilder.Append(e.Payload)
	}
	rec := b.NewRecordBatch()
	defer rec.Release()
	var buf bytes.Buffer
	w := ipc.NewWriter(&buf, ipc.WithSchema(Schema))
	if err := w.Write(rec); err != nil {
		return nil, fmt.Errorf("writing arrow record: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("closing arrow stream: %w", err)
	}
	return buf.Bytes(), nil
}

// SchemaError says a received batch does not have the expected schema.
type SchemaError struct {
	Field string // the column at fault
	Got   string
	Want  string
}

func (e *SchemaError) Error() string {
	return fmt.Sprintf("arrow batch column %q: got %s, want %s", e.Field, e.Got, e.Want)
}

// ErrEmpty is returned for a batch with no rows.
var ErrEmpty = errors.New("arrow batch has no rows")

// Decode reads an Arrow IPC stream produced by Encode (or by any writer of the same
// schema) and returns its rows. It checks the schema column by column and names the
// first column that does not match. Decode never panics on hostile input.
func Decode(data []byte) (entries []Entry, err error) {
	defer func() {
		// arrow-go validates most input, but a hostile IPC message can still reach a
		// panic in its readers; a bad batch must be an error, never a crash.
		if r := recover(); r != nil {
			entries, err = nil, fmt.Errorf("malformed arrow stream: %v", r)
		}
	}()
	if err := precheck(data); err != nil {
		return nil, err
	}
	rd, err := ipc.NewReader(bytes.NewReader(data), ipc.WithAllocator(memory.DefaultAllocator))
	if err != nil {
		return nil, fmt.Errorf("reading arrow stream: %w", err)
	}
	defer rd.Release()
	if err := checkSchema(rd.Schema()); err != nil {
		return nil, err
	}
	for rd.Next() {
		rec := rd.RecordBatch()
		if err := appendRows(&entries, rec); err != nil {
			return nil, err
		}
	}
	if err := rd.Err(); err != nil {
		return nil, fmt.Errorf("reading arrow stream: %w", err)
	}
	if len(entries) == 0 {
		return nil, ErrEmpty
	}
	return entries, nil
}

func checkSchema(got *arrow.Schema) error {
	want := Schema.Fields()
	if got.NumFields() != len(want) {
		return &SchemaError{Field: "*", Got: fmt.Sprintf("%d columns", got.NumFields()), Want: fmt.Sprintf("%d columns", len(want))}
	}
	for i, w := range want {
		g := got.Field(i)
		if g.Name != w.Name || !arrow.TypeEqual(g.Type, w.Type) {
			return &SchemaError{Field: w.Name, Got: g.Name + " " + g.Type.String(), Want: w.Name + " " + w.Type.String()}
		}
	}
	return nil
}

func appendRows(entries *[]Entry, rec arrow.RecordBatch) error {
	seq := rec.Column(0).(*array.Uint64)
	ts := rec.Column(1).(*array.Timestamp)
	str := func(i int) *array.String { return rec.Column(i).(*array.String) }
	kind, typ, rule, sev, prev, hash, payload := str(2), str(3), str(4), str(5), str(6), str(7), str(8)
	for _, col := range []struct {
		name string
		arr  arrow.Array
	}{{ColSeq, seq}, {ColTime, ts}, {ColKind, kind}, {ColPrevHash, prev}, {ColHash, hash}, {ColPayload, payload}} {
		if col.arr.NullN() > 0 {
			return &SchemaError{Field: col.name, Got: "nulls", Want: "no nulls"}
		}
	}
	for r := 0; r < int(rec.NumRows()); r++ {
		*entries = append(*entries, Entry{
			Seq:      seq.Value(r),
			Time:     time.Unix(0, int64(ts.Value(r))).UTC(),
			Kind:     kind.Value(r),
			Type:     typ.Value(r),
			Rule:     rule.Value(r),
			Severity: sev.Value(r),
			PrevHash: prev.Value(r),
			Hash:     hash.Value(r),
			Payload:  []byte(payload.Value(r)),
		})
	}
	return nil
}
