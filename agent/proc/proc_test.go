package proc

import (
	"strings"
	"testing"
	"time"
)

func TestParseStatus(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    StatusFields
		wantErr string
	}{
		{
			name: "real status",
			in:   "Name:\tcat\nUmask:\t0022\nState:\tR (running)\nTgid:\t42\nNgid:\t0\nPid:\t42\nPPid:\t7\nTracerPid:\t0\nUid:\t65534\t0\t65534\t65534\nGid:\t65534\t65534\t65534\t65534\n",
			want: StatusFields{PPID: 7, UID: 65534, EUID: 0},
		},
		{name: "uid before ppid", in: "Uid:\t1\t2\t3\t4\nPPid:\t0\n", want: StatusFields{PPID: 0, UID: 1, EUID: 2}},
		{name: "no ppid", in: "Uid:\t1\t1\t1\t1\n", wantErr: "no PPid line"},
		{name: "no uid", in: "PPid:\t1\n", wantErr: "no Uid line"},
		{name: "empty", in: "", wantErr: "no PPid line"},
		{name: "bad ppid", in: "PPid:\tx\nUid:\t1\t1\t1\t1\n", wantErr: "parsing PPid"},
		{name: "short uid", in: "PPid:\t1\nUid:\t1\n", wantErr: "want real and effective"},
		{name: "negative uid", in: "PPid:\t1\nUid:\t-1\t1\t1\t1\n", wantErr: "parsing real uid"},
		{name: "huge uid", in: "PPid:\t1\nUid:\t1\t99999999999\t1\t1\n", wantErr: "parsing effective uid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseStatus([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseStatus error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseStatus: %v", err)
			}
			if got != tt.want {
				t.Fatalf("ParseStatus = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func FuzzParseStatus(f *testing.F) {
	f.Add([]byte("PPid:\t7\nUid:\t65534\t0\t65534\t65534\n"))
	f.Add([]byte("Uid:\t1\nPPid:\t-3\n"))
	f.Add([]byte(":\n:::\nPPid:"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseStatus(data)
		if err == nil && (s.UID < 0 || s.EUID < 0) {
			t.Fatalf("negative uid %+v from %q", s, data)
		}
	})
}

func TestJoinCmdline(t *testing.T) {
	tests := []struct {
		name      string
		in        string
		max       int
		want      string
		truncated bool
	}{
		{name: "args", in: "cat\x00/etc/passwd\x00", max: 100, want: "cat /etc/passwd"},
		{name: "no trailing nul", in: "sh\x00-c\x00echo x", max: 100, want: "sh -c echo x"},
		{name: "empty arg kept", in: "a\x00\x00b\x00", max: 100, want: "a  b"},
		{name: "empty", in: "", max: 100, want: ""},
		{name: "exactly max", in: "abcd\x00", max: 5, want: "abcd"},
		{name: "cut", in: "abcdef\x00", max: 4, want: "abcd", truncated: true},
		{name: "setproctitle style", in: "nginx: worker process\x00\x00\x00", max: 100, want: "nginx: worker process"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, tr := JoinCmdline([]byte(tt.in), tt.max)
			if got != tt.want || tr != tt.truncated {
				t.Fatalf("JoinCmdline(%q, %d) = %q, %v; want %q, %v", tt.in, tt.max, got, tr, tt.want, tt.truncated)
			}
		})
	}
}

func FuzzJoinCmdline(f *testing.F) {
	f.Add([]byte("cat\x00/etc/passwd\x00"), 4096)
	f.Add([]byte("\x00\x00"), 1)
	f.Fuzz(func(t *testing.T, data []byte, max int) {
		if max < 0 || max > 1<<16 {
			return
		}
		got, _ := JoinCmdline(data, max)
		if len(got) > max {
			t.Fatalf("len %d > max %d", len(got), max)
		}
		if strings.ContainsRune(got, 0) {
			t.Fatalf("NUL left in %q", got)
		}
	})
}

func TestUsersCaches(t *testing.T) {
	now := time.Unix(1000, 0)
	calls := 0
	u := NewUsers(time.Minute)
	u.now = func() time.Time { return now }
	u.lookup = func(uid string) (string, error) {
		calls++
		if uid == "0" {
			return "root", nil
		}
		return "", &Error{File: "passwd"}
	}
	for range 3 {
		if got := u.Name(0); got != "root" {
			t.Fatalf("Name(0) = %q, want root", got)
		}
		if got := u.Name(12345); got != "" {
			t.Fatalf("Name(12345) = %q, want empty", got)
		}
	}
	if calls != 2 {
		t.Fatalf("%d lookups, want 2 (hits and misses cached)", calls)
	}
	now = now.Add(2 * time.Minute)
	u.Name(0)
	if calls != 3 {
		t.Fatalf("%d lookups after expiry, want 3", calls)
	}
	if got := u.Name(-1); got != "" {
		t.Fatalf("Name(-1) = %q, want empty", got)
	}
}
