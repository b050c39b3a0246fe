from uponai_mcp.cli import main

raise SystemExit(main())
