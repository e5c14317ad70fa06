package tripwirev1

// ProtocolVersion is the wire protocol version this build speaks. A collector accepts
// the versions in SupportedProtocolVersions and refuses others at registration with
// FAILED_PRECONDITION.
//
// Version 2 added enrolment (EnrollService), certificate renewal over the stream
// (RenewRequest, RenewResult) and chain probes (ChainHashRequest, ChainHash); a version
// 1 agent would ignore the probes a forked chain needs, so it is refused.
const ProtocolVersion uint32 = 2

// SupportedProtocolVersions lists the agent protocol versions a collector of this build
// accepts.
var SupportedProtocolVersions = []uint32{2}
