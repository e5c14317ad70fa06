package tripwirev1

// ProtocolVersion is the wire protocol version this build speaks. A collector accepts
// the versions in SupportedProtocolVersions and refuses others at registration with
// FAILED_PRECONDITION.
const ProtocolVersion uint32 = 1

// SupportedProtocolVersions lists the agent protocol versions a collector of this build
// accepts.
var SupportedProtocolVersions = []uint32{1}
