// Package pki is the collector's certificate authority: it makes the CA and the
// collector's server certificate (Init), issues host client certificates that carry each
// host's id (Issue), reads that id back from a verified peer (HostIdentity,
// IdentityFromContext) and builds the reloadable mutual-TLS configuration of the ingest
// server (LoadServerTLS) and the TLS configuration of the enrolment listener
// (ServerTLS.EnrollConfig). For keys that hosts make themselves, it checks their signing
// requests (ParseCSR, CheckRenewalKey) and signs short-lived certificates in the same
// shape as Issue's (Signer), at enrolment and at each renewal over the stream.
//
// A host's identity is the URI SAN urn:tripwire:host:<uuid> of a client certificate
// signed by the CA; the subject common name is the host name operators know it by.
// Nothing an agent sends inside the stream can change who it is. See
// docs/adr/0006-pki-and-host-identity.md.
//
// On-disk layout of a PKI directory (0700):
//
//	ca.crt, ca.key (0600)            the CA
//	server.crt, server.key (0600)    the collector's server certificate
//	<hostname>/ca.crt                the CA again, to ship to the host
//	<hostname>/agent.crt             the host's client certificate
//	<hostname>/agent.key (0600)      its key
//
// The functions that write a directory are meant for one operator command at a time;
// they are not safe for concurrent use on the same directory.
package pki
