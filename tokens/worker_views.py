"""The workers' own views, exactly as SURF's create_views.py and GRID_LRT write them.

Used to create the views of a new token set where they are absent (never to change existing ones), and by the
demo seed. The text is stored as the tools store it: pilots and Fauxton users read it.
"""

SURF_VIEW_CODE = """
function(doc) {{
   if(doc.type == "token") {{
    if({condition}) {{
      emit(doc._id, doc._id);
    }}
  }}
}}
"""
SURF_OVERVIEW_CODE = """
function(doc) {{
   if(doc.type == "token") {{
       if ({todo}){{
          emit('todo', 1);
       }}
       if({locked}) {{
          emit('locked', 1);
       }}
       if({done}) {{
          emit('done', 1);
       }}
       if({error}) {{
          emit('error', 1);
       }}
   }}
}}
"""
SURF_OVERVIEW_REDUCE = """
function (key, values, rereduce) {
   return sum(values);
}
"""
SURF_CONDITIONS = {
    "todo": "doc.lock == 0 && doc.done == 0",
    "locked": "doc.lock > 0 && doc.done == 0",
    "done": "doc.lock > 0 && doc.done > 0 && parseInt(doc.exit_code) == 0",
    "error": "doc.lock > 0 && doc.done > 0 && parseInt(doc.exit_code) != 0",
}


def surf_design_doc(logic_appendix=""):
    """SURF's create_views(db, name, logic_appendix): the four state views and overview_total."""
    conditions = {name: cond + logic_appendix for name, cond in SURF_CONDITIONS.items()}
    views = {name: {"map": SURF_VIEW_CODE.format(condition=cond)} for name, cond in conditions.items()}
    views["overview_total"] = {"map": SURF_OVERVIEW_CODE.format(**conditions), "reduce": SURF_OVERVIEW_REDUCE}
    return {"language": "javascript", "views": views}


LRT_VIEW_CODE = """function(doc) {{
   if(doc.type == "{token_type}") {{
    if({condition}) {{
      emit(doc._id, {value});
    }}
  }}
}}
"""
LRT_COUNT_CODE = """function(doc) {{
   if(doc.type == "{token_type}") {{
       if(doc.lock == 0 && doc.done == 0) {{
          emit('todo', 1);
       }}
       if(doc.lock > 0 && doc.status == 'downloading') {{
          emit('downloading', 1);
       }}
       if({done}) {{
          emit('done', 1);
       }}
       if({error}) {{
          emit('error', 1);
       }}
       if(doc.lock > 0 && doc.status == 'launched') {{
          emit('waiting', 1);
       }}
       if(doc.lock > 0 && doc.done == 0 && doc.status != 'downloading') {{
          emit('running', 1);
       }}
   }}
}}
"""
LRT_COUNT_REDUCE = """function (key, values, rereduce) {
   return sum(values);
}
"""



def lrt_design_doc(token_type, api):
    """GRID_LRT's design document for one token type: 0.5 views, or the 1.x set (with PICAS_API_VERSION)."""
    legacy = api == "0.5"
    error = 'doc.output != 0' if legacy else 'doc.status == "error"'
    views = {
        "todo": ("doc.lock == 0 && doc.done == 0", "doc._id"),
        "locked": ("doc.lock > 0 && doc.done == 0", "doc._id" if legacy else "doc.status"),
        "done": ('doc.status == "done"', "doc._id"),
        "error": (error, "doc.output" if legacy else "doc._id"),
    }
    doc = {
        "_id": f"_design/{token_type}",
        "language": "javascript",
        "views": {name: {"map": LRT_VIEW_CODE.format(token_type=token_type, condition=cond, value=value)}
                  for name, (cond, value) in views.items()},
    }
    count_done = "doc.lock > 0 && doc.done > 0 && doc.output == 0" if legacy else 'doc.status == "done"'
    doc["views"]["overview_total" if legacy else "overview_view"] = {
        "map": LRT_COUNT_CODE.format(token_type=token_type, done=count_done, error=error),
        "reduce": LRT_COUNT_REDUCE,
    }
    if not legacy:
        doc["PICAS_API_VERSION"] = api  # read by the pilots to pick the launcher version: not a view
    return doc
