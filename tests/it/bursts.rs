//! Bursts: many frames in one write, answered in full and in order, whatever the batch bound;
//! replies written before the socket closes; deadlines that cover every byte the server writes.
