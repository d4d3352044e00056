"""The API's routes, by topic. Each module's routers are grouped by who may call them (`public`, `reads`,
`writes`): rag.api.app includes each with the key check that fits it."""
