package batch

import (
	"encoding/binary"
	"fmt"

	flatbuffers "github.com/google/flatbuffers/go"
)

// Arrow IPC message header types (format/Message.fbs) and vtable slots used below.
const (
	headerSchema      = 1
	headerRecordBatch = 3

	slotMessageHeaderType = 6
	slotMessageHeader     = 8
	slotMessageBodyLength = 10
	slotMessageMetadata   = 12
	slotSchemaFields      = 6
	slotSchemaMetadata    = 8
	slotFieldChildren     = 14
	slotFieldMetadata     = 16
	slotBatchNodes        = 6
	slotBatchBuffers      = 8
	slotBatchCompression  = 10
	slotBatchVariadic     = 12

	maxFieldDepth = 8
)

// precheck walks the IPC stream's framing and the flatbuffer vector lengths that
// arrow-go trusts when it allocates, before arrow-go sees the bytes. arrow-go does not
// verify flatbuffers: a schema message claiming 2^31 fields makes it allocate that many
// (found by FuzzDecode), which would take the collector down with an uncatchable
// out-of-memory error. Every length is checked against the bytes actually present, so
// nothing larger than the input can be asked for. Indexing past the buffer panics, and
// Decode recovers that into an error.
func precheck(data []byte) error {
	off := 0
	sawSchema := false
	for off < len(data) {
		if len(data)-off < 8 {
			return fmt.Errorf("arrow stream: %d stray bytes at offset %d", len(data)-off, off)
		}
		if binary.LittleEndian.Uint32(data[off:]) != 0xFFFFFFFF {
			return fmt.Errorf("arrow stream: no continuation marker at offset %d (only the IPC stream format since Arrow 0.15 is accepted)", off)
		}
		mlen := int64(int32(binary.LittleEndian.Uint32(data[off+4:])))
		off += 8
		if mlen == 0 {
			return nil // end of stream
		}
		if mlen < 0 || mlen > int64(len(data)-off) {
			return fmt.Errorf("arrow stream: message at offset %d claims %d metadata bytes, %d remain", off-8, mlen, len(data)-off)
		}
		fb := data[off : off+int(mlen)]
		off += int(mlen)
		if len(fb) < 4 {
			return fmt.Errorf("arrow stream: message at offset %d is too short", off)
		}
		msg := table(fb, flatbuffers.GetUOffsetT(fb))
		body := msg.slotInt64(slotMessageBodyLength)
		if body < 0 || body > int64(len(data)-off) {
			return fmt.Errorf("arrow stream: message body claims %d bytes, %d remain", body, len(data)-off)
		}
		if err := msg.boundedVector(slotMessageMetadata, "message custom_metadata"); err != nil {
			return err
		}
		header, ok := msg.slotTable(slotMessageHeader)
		switch typ := msg.slotByte(slotMessageHeaderType); {
		case typ == headerSchema && !sawSchema && ok:
			sawSchema = true
			if err := header.boundedVector(slotSchemaMetadata, "schema custom_metadata"); err != nil {
				return err
			}
			if err := header.checkFields(slotSchemaFields, 0); err != nil {
				return err
			}
		case typ == headerRecordBatch && sawSchema && ok:
			// A compressed body states its own uncompressed size, which arrow-go
			// allocates on trust; agents never compress, so refuse it outright.
			if header.Offset(slotBatchCompression) != 0 {
				return fmt.Errorf("arrow stream: compressed record batches are not accepted")
			}
			for slot, name := range map[flatbuffers.VOffsetT]string{slotBatchNodes: "nodes", slotBatchBuffers: "buffers", slotBatchVariadic: "variadicBufferCounts"} {
				if err := header.boundedVector(slot, "record batch "+name); err != nil {
					return err
				}
			}
		default:
			return fmt.Errorf("arrow stream: unexpected message type %d at offset %d (want one schema, then record batches)", typ, off)
		}
		off += int(body)
	}
	return nil
}

// fbTable is a flatbuffers table with the size of its buffer at hand.
type fbTable struct{ flatbuffers.Table }

func table(buf []byte, pos flatbuffers.UOffsetT) fbTable {
	return fbTable{flatbuffers.Table{Bytes: buf, Pos: pos}}
}

func (t fbTable) slotInt64(slot flatbuffers.VOffsetT) int64 {
	if o := t.Offset(slot); o != 0 {
		return t.GetInt64(t.Pos + flatbuffers.UOffsetT(o))
	}
	return 0
}

func (t fbTable) slotByte(slot flatbuffers.VOffsetT) byte {
	if o := t.Offset(slot); o != 0 {
		return t.GetByte(t.Pos + flatbuffers.UOffsetT(o))
	}
	return 0
}

func (t fbTable) slotTable(slot flatbuffers.VOffsetT) (fbTable, bool) {
	o := t.Offset(slot)
	if o == 0 {
		return fbTable{}, false
	}
	return table(t.Bytes, t.Indirect(t.Pos+flatbuffers.UOffsetT(o))), true
}

// vector returns the start and length of the vector in slot (0, 0 if absent), with the
// length checked against the buffer: every element takes at least 4 bytes.
func (t fbTable) vector(slot flatbuffers.VOffsetT, what string) (start flatbuffers.UOffsetT, n int, err error) {
	o := flatbuffers.UOffsetT(t.Offset(slot))
	if o == 0 {
		return 0, 0, nil
	}
	n = t.VectorLen(o)
	if n < 0 || n > len(t.Bytes)/4 {
		return 0, 0, fmt.Errorf("arrow stream: %s claims %d elements in a %d-byte message", what, n, len(t.Bytes))
	}
	return t.Vector(o), n, nil
}

func (t fbTable) boundedVector(slot flatbuffers.VOffsetT, what string) error {
	_, _, err := t.vector(slot, what)
	return err
}

// checkFields checks a vector of Field tables and, recursively, their children.
func (t fbTable) checkFields(slot flatbuffers.VOffsetT, depth int) error {
	if depth > maxFieldDepth {
		return fmt.Errorf("arrow stream: fields nested deeper than %d", maxFieldDepth)
	}
	start, n, err := t.vector(slot, "schema fields")
	if err != nil {
		return err
	}
	for i := 0; i < n; i++ {
		f := table(t.Bytes, t.Indirect(start+flatbuffers.UOffsetT(i*4)))
		if err := f.boundedVector(slotFieldMetadata, "field custom_metadata"); err != nil {
			return err
		}
		if err := f.checkFields(slotFieldChildren, depth+1); err != nil {
			return err
		}
	}
	return nil
}
