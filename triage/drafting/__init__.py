"""Reply drafting: LLM chain or template, cited articles in force on the facts' date, quality check.

Public entry points
  triage.drafting.service.draft_reply(req, *, settings, retriever=None, examples=None, ...) -> Draft
  triage.drafting.quality.check_draft(text, *, complaint_text, facts_date, known_articles, citations=None)
  triage.drafting.template.template_draft(req, *, articles, facts_date=None) -> Draft
  triage.drafting.retrieval.kb_retriever(settings) -> retriever(text, on, *, k, subtype) -> [{law, article, text, in_force}]
  triage.drafting.lawfiles.LawLibrary.from_paths(dir).retriever()   (statute markdown, no knowledge base needed)
"""
