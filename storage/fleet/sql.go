package fleet

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/tripwire-project/tripwire/storage"
)

// Query runs one statement in ClickHouse, over the history's tables, with the readonly=1
// setting: ClickHouse itself then refuses anything but reads, including changing
// settings and table functions such as file() and url() (docs/adr/0012). Rows are
// passed to w as they arrive; past maxRows the query is cancelled, which stops the
// server's stream (18.16's protocol takes only numeric settings, so
// result_overflow_mode = 'break' cannot be asked for).
func (s *Store) Query(ctx context.Context, query string, maxRows int, w storage.RowWriter) (n int, truncated bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	// Cancelling before Close stops the server's stream instead of draining it.
	defer cancel()
	ctx = clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"readonly": 1}))
	rows, err := s.ch.Query(ctx, query)
	if err != nil {
		return 0, false, refusedIfReadonly(err)
	}
	defer func() {
		cancel()
		_ = rows.Close() // after a cancel, Close reports it; the rows read are what counts
	}()
	types := rows.ColumnTypes()
	cols := make([]storage.Column, len(types))
	dest := make([]any, len(types))
	for i, t := range types {
		cols[i] = storage.Column{Name: t.Name(), Type: t.DatabaseTypeName()}
		dest[i] = reflect.New(t.ScanType()).Interface()
	}
	if err := w.Columns(cols); err != nil {
		return 0, false, err
	}
	values := make([]any, len(types))
	for rows.Next() {
		if n == maxRows {
			return n, true, nil
		}
		if err := rows.Scan(dest...); err != nil {
			return n, false, fmt.Errorf("reading row %d: %w", n+1, err)
		}
		for i, d := range dest {
			v := deref(d)
			if b, ok := v.([]byte); ok && strings.HasPrefix(cols[i].Type, "Array(") {
				v = numbers(b) // an Array(UInt8) is numbers, not text
			}
			values[i] = storage.JSONValue(v)
		}
		if err := w.Row(values); err != nil {
			return n, false, err
		}
		n++
	}
	if err := rows.Err(); err != nil {
		return n, false, err
	}
	return n, false, nil
}

func numbers(b []byte) []uint16 {
	out := make([]uint16, len(b))
	for i, x := range b {
		out[i] = uint16(x)
	}
	return out
}

// deref returns the value behind the pointers of a scan destination (nil for NULL).
func deref(p any) any {
	v := reflect.ValueOf(p)
	for v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return nil
		}
		v = v.Elem()
	}
	return v.Interface()
}

// ClickHouse's error codes for what readonly=1 forbids.
const (
	chReadonly        = 164 // READONLY: "Cannot execute query in readonly mode"
	chQueryIsProhibit = 392 // QUERY_IS_PROHIBITED
	chNotEnoughPriv   = 497 // ACCESS_DENIED (newer servers)
)

// refusedIfReadonly marks ClickHouse's refusals under readonly=1 as such.
func refusedIfReadonly(err error) error {
	var ex *clickhouse.Exception
	if errors.As(err, &ex) && (ex.Code == chReadonly || ex.Code == chQueryIsProhibit || ex.Code == chNotEnoughPriv) {
		return fmt.Errorf("%w: %w", storage.ErrQueryRefused, err)
	}
	return err
}
