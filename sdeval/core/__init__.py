"""What every stage stands on: errors, atomic writes, hashing, paths, devices, offline checks, provenance, the
config-file reader, image finding and decoding, the share a process owns. Nothing here imports another sdeval
package."""
