package wire

// SeqChecker checks the seqs of the DATA, REQUEST and PING frames arriving in
// one direction of a connection: 1, 2, 3, ... without gaps. Parse cannot,
// since the rule needs the previous seq. The zero value is ready to use; it
// is a plain value so that a connection's state can embed it without a
// pointer. It is not safe for concurrent use: one reader owns it.
type SeqChecker struct {
	last uint64
}

// Check accepts seq if it is exactly one more than the last accepted seq,
// and remembers it. Otherwise it returns a *Error with code PROTOCOL_ERROR
// and leaves the checker as it was.
func (s *SeqChecker) Check(seq uint64) error {
	// seq 0 is never next: it belongs to HELLO and GOAWAY, and after 2^64-1
	// frames the counter has nowhere to go.
	if seq != s.last+1 || seq == 0 {
		return errSeqOrder
	}
	s.last = seq
	return nil
}

// Last returns the highest seq accepted so far (0 before the first): the
// last seq a GOAWAY sent in this direction reports.
func (s *SeqChecker) Last() uint64 { return s.last }
