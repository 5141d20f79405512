"""The simple designer (简易模式, docs/simple-designer.md): a procedure as a vertical list of blocks, stored as BPMN.

- model.py      — the block model and the parsing of untrusted JSON (sizes, depth, unknown keys, ids)
- semantics.py  — what the model may name: roles, notice kinds, procedures, fields filled earlier
- graph.py      — what each block compiles to (elements, flows, lanes, grid places)
- layout.py     — the diagram (DI): lanes 村 → 镇 → 县, left to right, sized to content and labels
- bpmnxml.py    — the BPMN document with XiangFlow's step properties
- compiler.py   — the draft's files (procedure.json, BPMN, forms, the notice catalog)
- decompiler.py — a draft read back as a model, or why it stays in BPMN mode
- vocabulary.py — the words the block editor offers
- service.py    — the studio's side: templates, new drafts from them, read and save a draft as a model
"""
