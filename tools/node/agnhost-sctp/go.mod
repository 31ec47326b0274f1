module weir.dev/tools/agnhost-sctp

go 1.26.0
