package procwatch

import "testing"

func TestParseCgroup(t *testing.T) {
	const id = "3f4e5d6c7b8a99887766554433221100ffeeddccbbaa00112233445566778899"
	tests := []struct {
		name, in, want string
		ok             bool
	}{
		{name: "v2", in: "0::/system.slice/sshd.service\n", want: "/system.slice/sshd.service", ok: true},
		{name: "v2 docker", in: "0::/system.slice/docker-" + id + ".scope\n", want: "/system.slice/docker-" + id + ".scope container=" + id, ok: true},
		{name: "hybrid root v2", in: "9:name=systemd:/user.slice/session-3.scope\n4:memory:/x\n0::/\n", want: "/user.slice/session-3.scope", ok: true},
		{name: "v1 docker in another hierarchy", in: "4:memory:/docker/" + id + "\n1:name=systemd:/\n0::/\n", want: "/ container=" + id, ok: true},
		{name: "v1 only", in: "1:name=systemd:/init.scope\n2:cpu:/\n", want: "/init.scope", ok: true},
		{name: "no usable line", in: "2:cpu:/\n", ok: false},
		{name: "empty", in: "", ok: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := parseCgroup([]byte(tt.in))
			if got != tt.want || ok != tt.ok {
				t.Errorf("parseCgroup(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func FuzzParseCgroup(f *testing.F) {
	f.Add("0::/system.slice/docker-3f4e5d6c7b8a99887766554433221100ffeeddccbbaa00112233445566778899.scope\n")
	f.Add("9:name=systemd:/user.slice\n0::/\n")
	f.Add("0::\n")
	f.Fuzz(func(t *testing.T, in string) {
		got, ok := parseCgroup([]byte(in))
		if !ok && got != "" {
			t.Fatalf("parseCgroup(%q) = %q without ok", in, got)
		}
	})
}
