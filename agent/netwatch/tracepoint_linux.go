package netwatch

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// tracepointFormat is the tracepoint's format file, under tracefs.
const tracepointFormat = "events/sock/inet_sock_set_state/format"

// tracepointField is where a field of the tracepoint's context lies.
type tracepointField struct {
	offset, size int
}

// bpfLayout is the context layout bpf/netwatch.c is compiled for. The verifier only
// bounds context reads by the context's size, so a kernel laying the fields out
// differently would load the program and feed it garbage: checkTracepointFormat refuses
// it instead.
var bpfLayout = map[string]tracepointField{
	"skaddr": {8, 8}, "oldstate": {16, 4}, "newstate": {20, 4},
	"sport": {24, 2}, "dport": {26, 2}, "family": {28, 2}, "protocol": {30, 2},
	"saddr": {32, 4}, "daddr": {36, 4}, "saddr_v6": {40, 16}, "daddr_v6": {56, 16},
}

// checkTracepointFormat compares the kernel's format file with bpfLayout.
func checkTracepointFormat(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("reading tracepoint format: %w", err)
	}
	fields, err := parseTracepointFormat(data)
	if err != nil {
		return fmt.Errorf("parsing %s: %w", path, err)
	}
	for name, want := range bpfLayout {
		got, ok := fields[name]
		if !ok {
			return fmt.Errorf("%s: no field %s (the kernel predates it?)", path, name)
		}
		if got != want {
			return fmt.Errorf("%s: field %s at offset %d size %d, the eBPF program expects offset %d size %d", path, name, got.offset, got.size, want.offset, want.size)
		}
	}
	return nil
}

// parseTracepointFormat reads the field lines of a tracefs format file, e.g.
// "\tfield:__u8 saddr[4];\toffset:32;\tsize:4;\tsigned:0;".
func parseTracepointFormat(data []byte) (map[string]tracepointField, error) {
	fields := map[string]tracepointField{}
	for i, line := range bytes.Split(data, []byte{'\n'}) {
		l := strings.TrimSpace(string(line))
		if !strings.HasPrefix(l, "field:") {
			continue
		}
		var decl string
		var f tracepointField
		for part := range strings.SplitSeq(l, ";") {
			key, val, _ := strings.Cut(strings.TrimSpace(part), ":")
			var err error
			switch key {
			case "field":
				decl = val
			case "offset":
				f.offset, err = strconv.Atoi(val)
			case "size":
				f.size, err = strconv.Atoi(val)
			}
			if err != nil {
				return nil, fmt.Errorf("line %d: %s %q: %w", i+1, key, val, err)
			}
		}
		words := strings.Fields(decl)
		if len(words) == 0 {
			return nil, fmt.Errorf("line %d: field without a declaration", i+1)
		}
		name, _, _ := strings.Cut(words[len(words)-1], "[")
		fields[strings.TrimPrefix(name, "*")] = f
	}
	return fields, nil
}
